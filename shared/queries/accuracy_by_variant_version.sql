-- Accuracy per variant and model version from the feedback received since ? (dt, YYYY-MM-DD):
-- each prediction's feedback once, its observed label against the predicted one.
SELECT
    variant,
    model_version,
    count(DISTINCT prediction_id) AS feedback,
    count(DISTINCT CASE WHEN feedback_label = label THEN prediction_id END) AS correct,
    CAST(count(DISTINCT CASE WHEN feedback_label = label THEN prediction_id END) AS double)
        / count(DISTINCT prediction_id) AS accuracy
FROM prediction_history
WHERE record_type = 'feedback' AND dt >= ?
GROUP BY variant, model_version
ORDER BY variant, model_version
