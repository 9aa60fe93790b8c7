"""The EML-NET network: backbones, encoders, the frozen multi-layer extractor, the decoder and EMLNet.

`backbones` registers the CNNs an encoder can be built on (`densenet161` builds DenseNet-161, `places365`
converts its Places365 weights), `encoder` turns one into a saliency encoder, `extractor` freezes encoders into
one multi-output model, `decoder` and `emlnet` complete the model, `postprocess`, `resizing` and `geometry` take
maps to and from the model frame, and `saving.load_model` loads any of them from a `.keras` file.
`resnet50_torch` and `released` build the authors' released ResNet-50 EML-NET, whose checkpoints
`released_weights` converts (reading them through `torch_checkpoints`, as `places365` does).
"""
