"""Pure image code of the face pipeline: decode, detect, landmarks, align. No I/O."""
