"""Evaluation of finished runs: T3Bench quality and alignment, CLIP score.

    python -m metrics eval RUN_DIR... [--models tiny]     # writes RUN_DIR/metrics.json

Modules: config (protocol settings), icosphere + cameras (T3Bench's camera protocols), normalize
(T3Bench's frame), quality + image_reward (ImageReward-v1.0 on transformers' BLIP), clip_score
(open_clip), alignment + captioner + judges (captions and the judge), models (metric model
sets), evaluate (one run -> metrics.json, resumable).
"""
