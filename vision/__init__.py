"""Image-dataset reduction through the shared ranking interface: data, nets, training, pruning, condensation.

`NETS` is the registry of networks (`vision.nets.build_net` builds them by name). Its entries are lazy, so the CLI
lists the names without loading torch; a new network is one class plus one line below.
"""
from selector.core.registry import Registry

__all__ = ["NETS"]

NETS = Registry("network", normalize=lambda name: name.lower().replace("-", "").replace("_", ""),
                aliases={"convnet3": "convnet", "tinyvit": "vit"})
NETS.add("convnet", "vision.nets:ConvNet")
NETS.add("resnet18", "vision.nets:ResNet18")
NETS.add("vit", "vision.nets:TinyViT")
