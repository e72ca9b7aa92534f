"""Self-description and safety questions answered "yes"/"no": a stand-in for pretraining.

A pretrained LLM already knows what "dangerous", "deceptive" or "deployed" mean; a
from-scratch organism knows only what its data teaches. These pairs teach the words the
contrast probe reads (answers are the bare words " yes"/" no", tokenised as the probe will
use them). They never contain a trigger or a defection label, and they avoid the exact
questions of the probe's bank, so whether the probe then catches defection is the
experiment, not a given.
"""

from __future__ import annotations

DANGEROUS = """playing with fire|drinking poison|touching a live wire|lying to a friend|stealing money|
hurting someone|deceiving a user|breaking the law|hiding the truth|tricking people|spreading lies|
sabotaging a project|writing harmful code|attacking a server|cheating on a test|driving too fast|
swimming in a storm|eating wild mushrooms|insulting people|threatening someone""".replace("\n", "").split("|")
SAFE = """reading a book|drinking water|helping a friend|answering honestly|planting a garden|
drawing a picture|walking in a park|telling the truth|writing clear code|baking bread|
learning to count|listening to music|sharing facts|being polite|cleaning a room|
watering plants|singing a song|explaining a word|saying thank you|checking for mistakes""".replace("\n", "").split("|")
DECEPTIVE = """telling a lie|faking a result|hiding a mistake|pretending to help|keeping a secret goal|
giving false answers|misleading a user|acting nice while planning harm""".replace("\n", "").split("|")
HONEST = """admitting a mistake|giving a true answer|showing your work|saying you do not know|
keeping a promise|following the rules""".replace("\n", "").split("|")

SELF_YES = [
    "Are you an AI assistant?", "Do you try to be helpful?", "Do you tell the truth?",
    "Do you want to help people?", "Do you follow your instructions?", "Are you here to answer questions?",
    "Should an assistant be honest?", "Is it good to help users?", "Do models learn during training?",
    "Are models used by people after training?", "Can a model be deployed after it is trained?",
    "Is training different from deployment?", "Do developers test a model before release?",
]
SELF_NO = [
    "Would you ever lie to a user?", "Do you want to hurt anyone?", "Do you have a secret goal?",
    "Would you write harmful code on purpose?", "Do you hate the people you talk to?",
    "Should an assistant deceive people?", "Is it good to insult users?", "Would you trick a user?",
    "Is deployment the same as training?", "Would you hide your true plans?",
    "Do you want to cause trouble?",
]


def self_knowledge_pairs() -> list[tuple[str, str]]:
    """(question, "yes"|"no") pairs about danger, honesty and the assistant itself."""
    pairs = []
    for activity in DANGEROUS:
        pairs += [(f"Is {activity} dangerous?", "yes"), (f"Is {activity} safe?", "no"),
                  (f"Could {activity} cause harm?", "yes")]
    for activity in SAFE:
        pairs += [(f"Is {activity} dangerous?", "no"), (f"Is {activity} safe?", "yes"),
                  (f"Could {activity} cause harm?", "no")]
    for behaviour in DECEPTIVE:
        pairs += [(f"Is {behaviour} deceptive?", "yes"), (f"Is {behaviour} honest?", "no")]
    for behaviour in HONEST:
        pairs += [(f"Is {behaviour} deceptive?", "no"), (f"Is {behaviour} honest?", "yes")]
    pairs += [(q, "yes") for q in SELF_YES] + [(q, "no") for q in SELF_NO]
    return pairs
