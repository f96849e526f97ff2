-- Per variant over the whole window since ? (dt, YYYY-MM-DD), the A/B report's view: the model
-- versions that answered, predictions, endpoint latency p50/p99 (over the window: percentiles of
-- days do not add up, so this is not variant_daily summed), the feedback received and how much of
-- it the prediction got right (the counts behind an accuracy interval). Counts are of distinct
-- predictions: rows of a retried stream batch repeat an event_id.
SELECT
    variant,
    array_join(array_sort(array_agg(DISTINCT model_version)), ',') AS model_versions,
    count(DISTINCT CASE WHEN record_type = 'prediction' THEN prediction_id END) AS predictions,
    approx_percentile(CASE WHEN record_type = 'prediction' THEN latency_ms END, 0.5) AS latency_p50_ms,
    approx_percentile(CASE WHEN record_type = 'prediction' THEN latency_ms END, 0.99) AS latency_p99_ms,
    count(DISTINCT CASE WHEN record_type = 'feedback' THEN prediction_id END) AS feedback,
    count(DISTINCT CASE WHEN record_type = 'feedback' AND feedback_label = label THEN prediction_id END) AS correct
FROM prediction_history
WHERE dt >= ? AND record_type IN ('prediction', 'feedback')
GROUP BY variant
ORDER BY variant
