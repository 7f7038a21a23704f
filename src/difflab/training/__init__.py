"""Training: the one loop (:mod:`.loop`) and what it trains (:mod:`.trainable`): diffusion models
(:mod:`.diffusion`), noise-aware classifiers (:mod:`.classifier`) and autoencoders (:mod:`.autoencoder`), with the
resumable state (:mod:`.state`), the run's config on resume (:mod:`.run_config`), EMA and torchrun DDP."""
