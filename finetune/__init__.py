"""LoRA fine-tuning and evaluation of vision-language models on selected subsets."""
