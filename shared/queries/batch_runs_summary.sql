-- Batch outputs (the crawler's table over part-*.jsonl) per day and model version since ?
-- (YYYY-MM-DD, compared with the rows' ISO-8601 timestamps): rows, positives, mean probability.
SELECT
    substr("timestamp", 1, 10) AS day,
    modelversion AS model_version,
    count(*) AS rows,
    sum(label) AS positives,
    avg(probability) AS mean_probability,
    avg(latencyms) AS mean_latency_ms
FROM {batch_table}
WHERE "timestamp" >= ?
GROUP BY substr("timestamp", 1, 10), modelversion
ORDER BY day, model_version
