"""HuggingFace ``ViTForImageClassification`` (PyTorch) and keras_hub ``ViTBackbone`` with a Dense head on the class
token (Keras) with the same weights, ported by keras_hub's own HF→Keras recipe
(``keras_hub/src/utils/transformers/convert_vit.py``): layer-norm ε 10⁻⁶ and the exact-erf GELU set explicitly on
both sides (docs/transformers.md#keras-hub). ``vit_twin()`` returns ``(keras_model, torch_model, x_keras, x_torch)``
with x channels-last for Keras and channels-first for PyTorch (the same images)."""
from __future__ import annotations

import numpy as np
import torch

SIZE, PATCH, WIDTH, HEADS, LAYERS, MLP, CLASSES, EPS = 32, 8, 32, 2, 2, 64, 10, 1e-6


def torch_vit(seed: int = 0):
    import transformers
    torch.manual_seed(seed)
    config = transformers.ViTConfig(image_size=SIZE, patch_size=PATCH, hidden_size=WIDTH, num_hidden_layers=LAYERS,
                                    num_attention_heads=HEADS, intermediate_size=MLP, num_labels=CLASSES,
                                    layer_norm_eps=EPS, hidden_act="gelu", qkv_bias=True, hidden_dropout_prob=0.0,
                                    attention_probs_dropout_prob=0.0, initializer_range=0.3)
    model = transformers.ViTForImageClassification(config).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # HF initialises the class token, position table and biases at 0 or tiny values
        for name, p in model.named_parameters():
            if "cls_token" in name or "position" in name or name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))
    return model


def keras_vit():
    import keras
    import keras_hub
    backbone = keras_hub.models.ViTBackbone(image_shape=(SIZE, SIZE, 3), patch_size=PATCH, num_layers=LAYERS,
                                            num_heads=HEADS, hidden_dim=WIDTH, mlp_dim=MLP, dropout_rate=0.0,
                                            attention_dropout=0.0, layer_norm_epsilon=EPS, use_mha_bias=True)
    inputs = keras.Input((SIZE, SIZE, 3))
    return keras.Model(inputs, keras.layers.Dense(CLASSES, name="head")(backbone(inputs)[:, 0])), backbone


def port(backbone, head, state):
    """keras_hub's convert_vit.py recipe, written out on a state dict."""
    w = {k: v.detach().double().numpy() for k, v in state.items()}
    embedding = backbone.layers[1]
    embedding.patch_embedding.kernel.assign(np.transpose(w["vit.embeddings.patch_embeddings.projection.weight"],
                                                         (2, 3, 1, 0)))
    embedding.patch_embedding.bias.assign(w["vit.embeddings.patch_embeddings.projection.bias"])
    embedding.class_token.assign(w["vit.embeddings.cls_token"])
    embedding.position_embedding.embeddings.assign(w["vit.embeddings.position_embeddings"][0])
    head_dim = WIDTH // HEADS
    for i, block in enumerate(backbone.layers[2].encoder_layers):
        prefix = f"vit.layers.{i}"  # transformers 5 names (convert_vit.py reads the checkpoints' older names)
        for part, dense in (("q_proj", block.mha.query_dense), ("k_proj", block.mha.key_dense),
                            ("v_proj", block.mha.value_dense)):
            dense.kernel.assign(w[f"{prefix}.attention.{part}.weight"].T.reshape(WIDTH, HEADS, head_dim))
            dense.bias.assign(w[f"{prefix}.attention.{part}.bias"].reshape(HEADS, head_dim))
        block.mha.output_dense.kernel.assign(w[f"{prefix}.attention.o_proj.weight"].T.reshape(HEADS, head_dim, WIDTH))
        block.mha.output_dense.bias.assign(w[f"{prefix}.attention.o_proj.bias"])
        for norm, key in ((block.layer_norm_1, "layernorm_before"), (block.layer_norm_2, "layernorm_after")):
            norm.gamma.assign(w[f"{prefix}.{key}.weight"])
            norm.beta.assign(w[f"{prefix}.{key}.bias"])
        for dense, key in ((block.mlp.dense_1, "mlp.fc1"), (block.mlp.dense_2, "mlp.fc2")):
            dense.kernel.assign(w[f"{prefix}.{key}.weight"].T)
            dense.bias.assign(w[f"{prefix}.{key}.bias"])
    backbone.layers[2].layer_norm.gamma.assign(w["vit.layernorm.weight"])
    backbone.layers[2].layer_norm.beta.assign(w["vit.layernorm.bias"])
    head.kernel.assign(w["classifier.weight"].T)
    head.bias.assign(w["classifier.bias"])


def vit_twin(seed: int = 0, n: int = 2):
    torch_model = torch_vit(seed)
    keras_model, backbone = keras_vit()
    port(backbone, keras_model.get_layer("head"), torch_model.state_dict())
    x = np.random.RandomState(seed + 2).randn(n, 3, SIZE, SIZE).astype(np.float32)
    return keras_model, torch_model, np.ascontiguousarray(x.transpose(0, 2, 3, 1)), x
