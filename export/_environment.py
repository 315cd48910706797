"""Process-wide settings that must be in place before TensorFlow or transformers is imported.

transformers' TF classes need Keras 2 (`tf_keras`), and importing torch next to TensorFlow
segfaults, so transformers must never look for torch.
"""

import os

os.environ["USE_TORCH"] = "0"
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
