-- Predictions per day and model version since ? (dt, YYYY-MM-DD), by source.
SELECT
    dt,
    model_version,
    count(DISTINCT prediction_id) AS predictions,
    count(DISTINCT CASE WHEN source = 'api' THEN prediction_id END) AS api,
    count(DISTINCT CASE WHEN source = 'stream' THEN prediction_id END) AS stream,
    count(DISTINCT CASE WHEN source = 'batch' THEN prediction_id END) AS batch
FROM prediction_history
WHERE record_type = 'prediction' AND dt >= ?
GROUP BY dt, model_version
ORDER BY dt, model_version
