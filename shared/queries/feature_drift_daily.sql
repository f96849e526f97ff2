-- The drift view: per day, variant and feature, the count, mean, standard deviation and the
-- 5th/50th/95th percentiles of the values served since ? (dt, YYYY-MM-DD).
-- The two arrays are the feature names and columns of the history (shared.analytics fills them in).
SELECT
    dt,
    variant,
    feature,
    count(value) AS n,
    avg(value) AS mean,
    stddev_samp(value) AS stddev,
    approx_percentile(value, 0.05) AS p05,
    approx_percentile(value, 0.5) AS p50,
    approx_percentile(value, 0.95) AS p95
FROM (
    SELECT h.dt, h.variant, f.feature, element_at(ARRAY[{feature_values}], f.i) AS value
    FROM prediction_history AS h
    CROSS JOIN UNNEST(ARRAY[{feature_names}]) WITH ORDINALITY AS f (feature, i)
    WHERE h.record_type = 'prediction' AND h.dt >= ?
) AS served
GROUP BY dt, variant, feature
ORDER BY dt, variant, feature
