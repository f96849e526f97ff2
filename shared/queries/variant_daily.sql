-- Per variant and day: predictions, endpoint latency p50/p99, and the error share of the feedback
-- received that day (feedback rows whose observed label differs from the prediction).
-- ? is the first day (dt, YYYY-MM-DD). Rows of a retried stream batch repeat an event_id, so
-- counts are of distinct predictions.
SELECT
    dt,
    variant,
    count(DISTINCT CASE WHEN record_type = 'prediction' THEN prediction_id END) AS predictions,
    approx_percentile(CASE WHEN record_type = 'prediction' THEN latency_ms END, 0.5) AS latency_p50_ms,
    approx_percentile(CASE WHEN record_type = 'prediction' THEN latency_ms END, 0.99) AS latency_p99_ms,
    count(DISTINCT CASE WHEN record_type = 'feedback' THEN prediction_id END) AS feedback,
    CAST(count(DISTINCT CASE WHEN record_type = 'feedback' AND feedback_label <> label THEN prediction_id END) AS double)
        / nullif(count(DISTINCT CASE WHEN record_type = 'feedback' THEN prediction_id END), 0) AS error_share
FROM prediction_history
WHERE dt >= ?
GROUP BY dt, variant
ORDER BY dt, variant
