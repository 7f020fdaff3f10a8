"""mmselect's roof: the `mmselect` CLI (`cli`, one module per subcommand in `commands`, `finetune_cli` for
`python -m finetune`), the selection pipeline (`pipeline`) and the DigitsVQA demo (`demo`).

It may import every other layer; nothing but tests imports it (see docs/architecture.md).
"""
