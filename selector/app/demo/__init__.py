"""The `mmselect demo` / `demo-data` / `demo-models` pieces: DigitsVQA (`data`), the demo CLIP (`clip`), the tiny and
stage-1 demo VLMs (`tiny_vlm`, `vlm`), the end-to-end loop (`loop`) and its Markdown report (`report`)."""
