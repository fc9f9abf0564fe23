"""Data: videos in (decoding, frame shards), the labelled image folders, the synthetic demo, labels and
Label Studio, the hand-off to a person, and the choice of frames to label."""
