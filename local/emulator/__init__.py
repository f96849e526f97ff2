"""Operations this pipeline calls that moto lacks, added to moto's backends (one module per gap)."""
