"""StyleFinder's serving side: model registry, embedder, vector store, gateway and evaluation."""

import os

# Set before anything imports huggingface_hub: model hubs never answer on an offline box, and a variant whose
# weights are missing must fail at once with our message instead of retrying downloads for a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
