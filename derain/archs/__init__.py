"""Networks of the paper: the AGLF-ViT encoder and the D_recog / D_recon / D_dr decoders."""
from derain.archs.aglf_vit import AGLFViTBlock, WindowAttention
from derain.archs.decoders import SPP, ImageDecoder, RecogDecoder
from derain.archs.encoder import Encoder, SpatialAttention
from derain.archs.ttl import ImageNet, RecogNet, create_model

__all__ = [
    "AGLFViTBlock", "WindowAttention", "SPP", "ImageDecoder", "RecogDecoder",
    "Encoder", "SpatialAttention", "ImageNet", "RecogNet", "create_model",
]
