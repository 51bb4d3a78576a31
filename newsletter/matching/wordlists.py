"""What the matcher knows of machine learning before it has seen papers: a prior.

Hand-written lists of the words every ML abstract uses, of the compounds in which a keyword
means something else, of terms that name the same thing and of named models and benchmarks
that stand for their field. With few papers stored they stand in for document counts
(`specificity`); once papers arrive, how common a keyword is comes from the papers, and a
topic's own `exclude` phrases carry the false friends of any other field.
"""

from __future__ import annotations

# Words that appear in most ML abstracts whatever the subject: alone they place no paper.
GENERIC_WORDS = frozenset(
    """
    learning learn model network neural deep data dataset training train method approach
    system efficient efficiency robust robustness performance task framework algorithm
    optimization analysis evaluation benchmark large scale scaling generation generative
    representation prediction inference feature structure information knowledge accuracy
    adaptive adaptation automatic automated fast scalable general application language
    improvement improve effective accurate problem result architecture signal process
    exploration
    """.split()
)

# Phrases as common as single generic words: "a deep neural network" is no topic.
GENERIC_PHRASES = (
    "deep learning",
    "machine learning",
    "neural network",
    "deep neural network",
    "artificial intelligence",
    "large scale",
    "state of the art",
    "real world",
)

# Compounds in which a keyword means something else: a hit inside one does not count,
# unless the compound itself is one of the topic's keywords. [Brackets] mark the misleading
# part when the rest keeps its meaning: in "multimodal image fusion" the images are images.
FALSE_FRIENDS = (
    "neural architecture search",
    "architecture search",
    "hyperparameter search",
    "grid search",
    "random search",
    "beam search",
    "line search",
    "search space",
    "road agent",
    "hate speech",
    "part of speech",
    "part-of-speech",
    "figure of speech",
    "free speech",
    "information diffusion",
    "memory efficient",
    "memory footprint",
    "memory usage",
    "memory consumption",
    "memory cost",
    "privacy policy",
    "public policy",
    "image manipulation",
    "data manipulation",
    "media manipulation",
    "packet manipulation",
    "web navigation",
    "GUI navigation",
    "website navigation",
    "representation alignment",
    "feature alignment",
    "latent alignment",
    "modality alignment",
    "cross-modal alignment",
    "multimodal alignment",
    "vision-language alignment",
    "image-text alignment",
    "text-image alignment",
    "sequence alignment",
    "distribution alignment",
    "domain alignment",
    "temporal alignment",
    "word alignment",
    "token alignment",
    "dense alignment",
    "in-depth alignment",
    "planner alignment",
    "vehicle safety",
    "road safety",
    "traffic safety",
    "food safety",
    "patient safety",
    "type safety",
    "memory safety",
    "thread safety",
    "theoretically sound",
    "mathematically sound",
    "sound and complete",
    "vision-language model",
    "vision language model",
    "visual language model",
    "visual question answering",
    "[multimodal] image fusion",
    "[multi-modal] image fusion",
    "[multimodal] distribution",
    "multimodal large language model",
    "omnimodal large language model",
    "[multi-agent] reinforcement learning",
    "[multimodal] optimization",
    "message passing interface",
    "customer segmentation",
    "word segmentation",
    "dataset distillation",
    "data pruning",
    "data sparsity",
    "vector quantization",
    "vector quantized",
    "design space exploration",
    "data exploration",
)

# Terms that name the same thing: a topic with one of them also matches the others.
EQUIVALENTS = (
    ("LLM", "large language model"),
    ("VLM", "vision-language model"),
    ("MLLM", "multimodal large language model"),
    ("RL", "reinforcement learning"),
    ("RLHF", "reinforcement learning from human feedback"),
    ("MARL", "multi-agent reinforcement learning"),
    ("GNN", "graph neural network"),
    ("NAS", "neural architecture search"),
    ("ASR", "automatic speech recognition", "speech recognition"),
    ("TTS", "text-to-speech", "speech synthesis"),
    ("PEFT", "parameter-efficient fine-tuning"),
    ("MoE", "mixture of experts"),
    ("NER", "named entity recognition"),
    ("NLP", "natural language processing"),
    ("RAG", "retrieval-augmented generation"),
    ("T2I", "text-to-image"),
    ("ViT", "vision transformer"),
    ("LoRA", "low-rank adaptation"),
    ("OOD", "out-of-distribution"),
    ("CoT", "chain-of-thought"),
    ("ICL", "in-context learning"),
    ("VQA", "visual question answering"),
    ("GAN", "generative adversarial network"),
    ("VAE", "variational autoencoder"),
    ("DPO", "direct preference optimization"),
    ("SLAM", "simultaneous localization and mapping"),
    ("autonomous driving", "self-driving", "autonomous vehicle"),
    ("image generation", "image synthesis"),
    ("video generation", "video synthesis"),
)

# Named models and benchmarks that stand for their field: a paper that evaluates Qwen3 or
# trains on ImageNet is about LLMs or image classification even when it never says so.
# Names match whatever their version number ("Llama3", "Qwen2.5"), but not inside other words.
# Keyed by the keyword's stems (see _key).
INSTANCES = {
    "larg languag model": (
        "GPT ChatGPT LLaMA Qwen Mistral Mixtral Gemma Vicuna Claude Gemini DeepSeek PaLM OLMo OLMoE"
    ).split(),
    "imag classification": ["ImageNet", "CIFAR", "MNIST"],
    "speech recognition": ["LibriSpeech"],
    "languag understand": ["GLUE", "SuperGLUE"],
    "question answer": ["SQuAD", "HotpotQA"],
    "vision languag model": ["LLaVA", "BLIP"],
}
