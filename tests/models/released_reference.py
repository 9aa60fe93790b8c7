"""PyTorch reference of the released EML-NET (SenJia/EML-NET-Saliency), for the converter tests.

Written from the official definitions (resnet.py: ResNet with Bottleneck
[3, 4, 6, 3], readouts output0..output4 and `combined`; decoder.py: Decoder
with img_model / pla_model ModuleLists and `combined`; eval_combined.py:
ToTensor input, blur sigma 5 with skimage's gaussian, min-max), with the same
module names, so its state dicts have the released checkpoints' keys.
Weights are seeded; BatchNorm statistics are realistic: `calibrate` runs
batches in train mode with cumulative averaging (momentum None), so every
running mean/var is the statistic of the data that reaches it.
"""

import numpy as np
import scipy.ndimage
import torch
import torch.nn.functional as F
from torch import nn


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


def _output(planes, sigmoid=False):
    return nn.Sequential(nn.Conv2d(planes, 1, 3, padding=1), nn.BatchNorm2d(1),
                         nn.Sigmoid() if sigmoid else nn.ReLU())


class ResNet(nn.Module):
    """resnet.py's ResNet(Bottleneck, [3, 4, 6, 3]): forward(x, decode) as released."""

    def __init__(self):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, 3)
        self.layer2 = self._make_layer(128, 4, stride=2)
        self.layer3 = self._make_layer(256, 6, stride=2)
        self.layer4 = self._make_layer(512, 3, stride=2)
        self.output0 = _output(64)
        self.output1 = _output(256)
        self.output2 = _output(512)
        self.output3 = _output(1024)
        self.output4 = _output(2048)
        self.combined = _output(5, sigmoid=True)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x, decode=False):
        h, w = x.size(2), x.size(3)
        out0 = F.relu(self.bn1(self.conv1(x)))
        out1 = self.layer1(self.maxpool(out0))
        out2 = self.layer2(out1)
        out3 = self.layer3(out2)
        out4 = self.layer4(out3)
        outs = [self.output0(out0), self.output1(out1), self.output2(out2), self.output3(out3), self.output4(out4)]
        if decode:
            return outs
        r, c = outs[0].size(2), outs[0].size(3)
        x = torch.cat([outs[0]] + [F.interpolate(o, (r, c)) for o in outs[1:]], dim=1)
        return F.interpolate(self.combined(x), (h, w))


class Decoder(nn.Module):
    """decoder.py's Decoder(shape, 5, 5)."""

    def __init__(self, shape, num_img_feat=5, num_pla_feat=5):
        super().__init__()
        self.shape = shape
        self.img_model = nn.ModuleList([_output(1) for _ in range(num_img_feat)])
        self.pla_model = nn.ModuleList([_output(1) for _ in range(num_pla_feat)])
        self.combined = _output(num_img_feat + num_pla_feat, sigmoid=True)

    def forward(self, x):
        img_feat, pla_feat = x
        feat = [F.interpolate(b(a), self.shape) for a, b in zip(img_feat, self.img_model)]
        feat += [F.interpolate(b(a), self.shape) for a, b in zip(pla_feat, self.pla_model)]
        return self.combined(torch.cat(feat, dim=1))


def randomize(model, seed):
    """Seeded weights: He-normal convs (resnet.py's init), random BN affine, random conv biases.

    A bottleneck's last BatchNorm (`bn3`) gets small scales, as in trained
    ResNets (and zero-init-residual training): the residual stream is then
    led by the identity path, and float32 rounding grows over the 16 blocks
    about as it does with trained weights rather than compounding (with
    scales ~1 there, even PyTorch's own float32 forward is ~1e-4 from its
    float64 forward at layer4's readout).
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.Conv2d):
                n = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                module.weight.normal_(0, (2.0 / n) ** 0.5, generator=generator)
                if module.bias is not None:
                    module.bias.uniform_(-0.2, 0.2, generator=generator)
            elif isinstance(module, nn.BatchNorm2d):
                low, high = (0.05, 0.3) if name.endswith("bn3") else (0.5, 1.5)
                module.weight.uniform_(low, high, generator=generator)
                module.bias.uniform_(-0.2, 0.2, generator=generator)
    return model


def calibrate(model, batches, forward=None):
    """Sets every BatchNorm's running mean/var to the statistics of `batches` (train mode), then eval()."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the batches
    model.train()
    with torch.no_grad():
        for batch in batches:
            (forward or model)(batch)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.1
    return model.eval()


def released_models(calibration_size=(64, 96), seed=0):
    """(imagenet ResNet, places ResNet, Decoder factory) with seeded weights and calibrated BatchNorms."""
    generator = torch.Generator().manual_seed(seed)
    images = [torch.rand(4, 3, *calibration_size, generator=generator) for _ in range(2)]
    encoders = []
    for index in range(2):
        encoder = randomize(ResNet(), seed * 10 + index)
        calibrate(encoder, images)
        encoders.append(encoder)
    decoder = randomize(Decoder(calibration_size), seed * 10 + 2)
    features = [[encoder(batch, decode=True) for encoder in encoders] for batch in images]
    calibrate(decoder, features, forward=decoder)
    return encoders[0], encoders[1], decoder


def to_input(image):
    """eval_combined.py's ToTensor: (h, w, 3) uint8 → (1, 3, h, w) float in [0, 1] (float images alike)."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div(255)


def released_forward(imagenet, places, decoder, image):
    """eval_combined.py's network part: the raw (h, w) sigmoid map and the readouts of both encoders."""
    with torch.no_grad():
        x = to_input(image)
        img_feat, pla_feat = imagenet(x, decode=True), places(x, decode=True)
        decoder.shape = tuple(image.shape[:2])
        pred = decoder([img_feat, pla_feat])
    return pred[0, 0].numpy(), img_feat, pla_feat


def post_process(pred, sigma=5.0):
    """eval_combined.py's post_process before the uint8 cast: skimage.filters.gaussian(pred, 5), min-max.

    skimage.filters.gaussian(image, sigma) on a float32 2-D image is
    scipy.ndimage.gaussian_filter(image, sigma, mode="nearest", truncate=4.0)
    (its defaults), output float32.
    """
    pred = scipy.ndimage.gaussian_filter(np.asarray(pred, np.float32), sigma, mode="nearest", truncate=4.0)
    pred = pred - pred.min()
    return pred / pred.max()
