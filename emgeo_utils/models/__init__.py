"""Any causal LM as the package sees it: the registry, loading a model and its SAEs, hooks, chat encoding, batching, sampling."""
