"""VLM backends behind one interface: OpenAI-compatible (vLLM), transformers, oracle."""
