"""Model zoo: the paper's CIFAR models, registered by name."""

from . import densenet, mobilenetv2, resnet, vgg  # noqa: F401  (registers the zoo)
from .registry import create_model, is_import_ref, list_models, register_model, resolve_model

__all__ = ["create_model", "is_import_ref", "list_models", "register_model", "resolve_model"]
