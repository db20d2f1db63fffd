"""From image bytes to embeddings: decode, detect, landmarks, align (vision/), embed; calibration."""
