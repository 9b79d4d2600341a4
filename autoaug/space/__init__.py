"""The search space and its executions: the op table, policies, RandAugment / TrivialAugment,
batched torch execution, the albumentations export, and the policy specs users write."""
