"""infergate operator: reconciles InferenceModel resources into serving workloads."""
