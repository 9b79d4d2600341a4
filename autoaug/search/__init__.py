"""Searching for policies: controller, PPO, configuration, trial store, workers, the policy search,
the RandAugment grid and the Gymnasium environment."""
