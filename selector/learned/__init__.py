"""The InstructionGPT-4 learned selector: features -> label subsets -> genuine labels -> attention selector -> select."""
