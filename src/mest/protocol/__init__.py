"""Wire protocols other than a predictor's own route: the Open Inference Protocol (V2)."""
