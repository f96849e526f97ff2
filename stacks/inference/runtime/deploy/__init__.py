"""The deploy function: reconciles the endpoint when the desired model state changes."""
