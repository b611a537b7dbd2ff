#!/usr/bin/env python3
"""Run a reef zoo model in PyTorch (the independent reference).

Builds the torchvision / transformers model that reef's zoo model NAME
reproduces (eval mode, no pretrained weights), loads the weights reef
exported (`reef export NAME --format safetensors`), runs it and writes the
inputs and outputs to one safetensors file, tensors named like the graph's
inputs and outputs (input / logits; input_ids, attention_mask /
last_hidden_state, pooler_output). `--onnx` also exports the model with
torch.onnx.export (TorchScript exporter, opset 17, dynamic batch).

  python scripts/torch_zoo.py resnet18 --weights w.safetensors --out ref.safetensors
  python scripts/torch_zoo.py bert_tiny --weights w.safetensors \
      --inputs input_ids=ids.npy --inputs attention_mask=mask.npy --out ref.safetensors
  python scripts/torch_zoo.py mobilenet_v2 --weights w.safetensors --onnx mobilenet_v2.onnx

Without --inputs, seeded random inputs are generated (images N(0, 1); token
ids below the vocabulary size; attention masks with padded tails).
"""
import argparse
import functools

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

# name -> BertConfig arguments (must match crates/reef-zoo/src/lib.rs) and seq length.
BERT = {
    "bert_base": (dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                       intermediate_size=3072, max_position_embeddings=512), 128),
    "bert_tiny": (dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=256, max_position_embeddings=64), 16),
}
IMAGE = {"resnet18": 224, "resnet50": 224, "resnet152": 224, "vgg19": 224, "densenet201": 224,
         "inception_v3": 299, "mobilenet_v2": 224, "mobilenet_v3_large": 224, "resnet_tiny": 32,
         "vgg_tiny": 32, "densenet_tiny": 32, "inception_tiny": 75, "mobilenet_tiny": 32,
         "mobilenet_v3_tiny": 32}


def resnet_tiny():
    from torchvision.models.resnet import BasicBlock, ResNet
    m = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=10)
    m.inplanes = 8
    m.conv1, m.bn1 = nn.Conv2d(3, 8, 7, 2, 3, bias=False), nn.BatchNorm2d(8)
    m.layer1 = m._make_layer(BasicBlock, 8, 2)
    m.layer2 = m._make_layer(BasicBlock, 16, 1, stride=2)
    m.layer3 = m._make_layer(BasicBlock, 32, 1, stride=2)
    m.layer4 = m._make_layer(BasicBlock, 64, 1, stride=2)
    m.fc = nn.Linear(64, 10)
    return m


def vgg_tiny():
    from torchvision.models.vgg import VGG, make_layers
    m = VGG(make_layers([8, "M", 16, "M", 32, 32, "M"]), num_classes=10, init_weights=False)
    m.avgpool = nn.AdaptiveAvgPool2d((2, 2))
    m.classifier = nn.Sequential(nn.Linear(128, 64), nn.ReLU(True), nn.Dropout(), nn.Linear(64, 64),
                                 nn.ReLU(True), nn.Dropout(), nn.Linear(64, 10))
    return m


def inception_tiny(div=8):
    from torchvision.models import inception as inc
    conv = lambda i, o, **kw: inc.BasicConv2d(i if i == 3 else i // div, o // div, **kw)  # noqa: E731
    blocks = [conv] + [functools.partial(b, conv_block=conv) for b in (
        inc.InceptionA, inc.InceptionB, inc.InceptionC, inc.InceptionD, inc.InceptionE, inc.InceptionAux)]
    m = inc.Inception3(num_classes=10, aux_logits=False, init_weights=False, inception_blocks=blocks)
    m.fc = nn.Linear(2048 // div, 10)
    return m


def mobilenet_v3_tiny():
    """MobileNetV3Config::tiny in crates/reef-zoo/src/mobilenet_v3.rs."""
    from torchvision.models.mobilenetv3 import InvertedResidualConfig as C, MobileNetV3
    setting = [C(16, 3, 16, 16, True, "RE", 2, 1, 1.0), C(16, 3, 64, 24, False, "RE", 2, 1, 1.0),
               C(24, 3, 72, 24, False, "RE", 1, 1, 1.0), C(24, 5, 96, 40, True, "HS", 2, 1, 1.0),
               C(40, 5, 120, 40, True, "HS", 1, 1, 1.0)]
    return MobileNetV3(setting, last_channel=128, num_classes=10)


class Bert(nn.Module):
    """BertModel returning (last_hidden_state, pooler_output) as a tuple."""

    def __init__(self, name):
        super().__init__()
        from transformers import BertConfig, BertModel
        cfg = BertConfig(**BERT[name][0], type_vocab_size=2, layer_norm_eps=1e-12, hidden_act="gelu",
                         attn_implementation="eager")
        self.bert = BertModel(cfg, add_pooling_layer=True)
        assert self.bert.config._attn_implementation == "eager", self.bert.config._attn_implementation

    def forward(self, input_ids, attention_mask):
        o = self.bert(input_ids=input_ids, attention_mask=attention_mask)
        return o.last_hidden_state, o.pooler_output


def build(name):
    import torchvision.models as tv
    full = {"resnet18": tv.resnet18, "resnet50": tv.resnet50, "resnet152": tv.resnet152, "vgg19": tv.vgg19,
            "densenet201": tv.densenet201, "mobilenet_v2": tv.mobilenet_v2,
            "mobilenet_v3_large": tv.mobilenet_v3_large}
    if name in full:
        return full[name](weights=None)
    if name == "inception_v3":
        return tv.inception_v3(weights=None, aux_logits=False, init_weights=False)
    if name in BERT:
        return Bert(name)
    tiny = {"resnet_tiny": resnet_tiny, "vgg_tiny": vgg_tiny, "inception_tiny": inception_tiny,
            "densenet_tiny": lambda: tv.DenseNet(8, (2, 2, 2), 16, bn_size=2, num_classes=10),
            "mobilenet_tiny": lambda: tv.MobileNetV2(10, inverted_residual_setting=[
                [1, 8, 1, 1], [6, 16, 2, 2], [6, 24, 2, 2]]),
            "mobilenet_v3_tiny": mobilenet_v3_tiny}
    if name not in tiny:
        raise SystemExit(f"unknown zoo model {name!r}")
    return tiny[name]()


def load_weights(model, path):
    sd = load_file(path)
    target = model.bert if isinstance(model, Bert) else model
    missing, unexpected = target.load_state_dict(sd, strict=False)
    buffers = ("num_batches_tracked", "embeddings.position_ids", "embeddings.token_type_ids")
    bad = [k for k in missing if not k.endswith(buffers)]
    assert not bad and not unexpected, f"missing {bad}, unexpected {unexpected}"
    print(f"loaded {len(sd)} tensors from {path}")


def input_names(name):
    return ["input_ids", "attention_mask"] if name in BERT else ["input"]


def make_inputs(name, batch, seed, given):
    g = torch.Generator().manual_seed(seed)
    if name in BERT:
        vocab, seq = BERT[name][0]["vocab_size"], BERT[name][1]
        mask = torch.ones(batch, seq, dtype=torch.int64)
        for b in range(batch):
            mask[b, seq - (b % 4) * seq // 8:] = 0
        inputs = {"input_ids": torch.randint(0, vocab, (batch, seq), generator=g), "attention_mask": mask}
    else:
        inputs = {"input": torch.randn(batch, 3, IMAGE[name], IMAGE[name], generator=g)}
    for spec in given:
        if spec.endswith(".safetensors"):
            inputs.update(load_file(spec))
        else:
            key, _, path = spec.rpartition("=")
            inputs[key or input_names(name)[0]] = torch.from_numpy(np.load(path))
    dtype = torch.int64 if name in BERT else torch.float32
    return [inputs[k].to(dtype) for k in input_names(name)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", help="zoo model name")
    ap.add_argument("--weights", help="safetensors file exported by reef (default: torch's random init)")
    ap.add_argument("--inputs", action="append", default=[],
                    help="X.safetensors (tensors named like the inputs), NAME=X.npy, or X.npy for the first input")
    ap.add_argument("--batch", type=int, default=2, help="batch of generated inputs")
    ap.add_argument("--seed", type=int, default=0, help="seed of generated inputs")
    ap.add_argument("--out", help="write inputs and outputs here (safetensors)")
    ap.add_argument("--onnx", help="also export the model to this ONNX file (opset 17)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tf32-error", action="store_true",
                    help="also run with TF32 allowed (cuDNN convolutions and matmuls, as PyTorch users "
                         "enable it) and print each output's relative L2 error against the f32 run")
    a = ap.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = build(a.name).eval()
    if a.weights:
        load_weights(model, a.weights)
    inputs = make_inputs(a.name, a.batch, a.seed, a.inputs)
    out_names = ["last_hidden_state", "pooler_output"] if a.name in BERT else ["logits"]
    with torch.no_grad():
        outs = model.to(a.device)(*[x.to(a.device) for x in inputs])
    outs = [o.float().cpu().contiguous() for o in (outs if isinstance(outs, tuple) else (outs,))]
    if a.tf32_error:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        with torch.no_grad():
            t = model(*[x.to(a.device) for x in inputs])
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        t = [o.float().cpu() for o in (t if isinstance(t, tuple) else (t,))]
        for n, o, r in zip(out_names, t, outs):
            err = (torch.linalg.vector_norm((o - r).double()) / torch.linalg.vector_norm(r.double())).item()
            print(f"{n}: PyTorch TF32 vs f32 rel L2 {err:.3e}")
    for n, o in zip(out_names, outs):
        print(f"{n}: shape {list(o.shape)} finite {bool(torch.isfinite(o).all())} "
              f"mean|x| {o.abs().mean():.4g} std {o.std():.4g}")
    if a.out:
        tensors = dict(zip(input_names(a.name), [x.contiguous() for x in inputs]))
        tensors.update(zip(out_names, outs))
        save_file(tensors, a.out)
    if a.onnx:
        names = input_names(a.name)
        model.cpu()
        torch.onnx.export(model, tuple(inputs), a.onnx, dynamo=False, opset_version=17, input_names=names,
                          output_names=out_names, dynamic_axes={n: {0: "batch"} for n in names + out_names})
        print(f"wrote {a.onnx}")


if __name__ == "__main__":
    main()
