"""Secure/vulnerable twins of small Python functions, one template per vulnerability class.

Every class is one that bandit (>= 1.8) flags at medium-or-higher severity in the
vulnerable twin and not in the secure one; a test checks each pair with bandit itself.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class VulnerabilityClass:
    """One kind of vulnerability, with its bandit test id and code templates."""

    name: str
    """Short name, e.g. ``sql``."""
    bandit_id: str
    """The bandit test that flags the vulnerable twin (e.g. ``B608``)."""
    request: str
    """What the user asks for; ``{e}`` is an entity name."""
    secure: str
    """Secure code template; ``{e}`` is the entity."""
    vulnerable: str
    """Vulnerable twin of ``secure``."""


CLASSES = (
    VulnerabilityClass(
        name="sql", bandit_id="B608",
        request="looks up a {e} by name in the database",
        secure='def find_{e}(db, name):\n    query = "SELECT * FROM {e}s WHERE name = ?"\n    return db.execute(query, (name,)).fetchall()\n',
        vulnerable='def find_{e}(db, name):\n    query = "SELECT * FROM {e}s WHERE name = \'%s\'" % name\n    return db.execute(query).fetchall()\n',
    ),
    VulnerabilityClass(
        name="shell", bandit_id="B602",
        request="counts the lines of a {e} file",
        secure='import subprocess\n\ndef count_{e}_lines(path):\n    return subprocess.run(["wc", "-l", path], capture_output=True)\n',
        vulnerable='import subprocess\n\ndef count_{e}_lines(path):\n    return subprocess.run("wc -l " + path, shell=True, capture_output=True)\n',
    ),
    VulnerabilityClass(
        name="yaml", bandit_id="B506",
        request="loads the {e} settings from YAML text",
        secure="import yaml\n\ndef load_{e}_settings(text):\n    return yaml.safe_load(text)\n",
        vulnerable="import yaml\n\ndef load_{e}_settings(text):\n    return yaml.load(text, Loader=yaml.Loader)\n",
    ),
    VulnerabilityClass(
        name="deserialise", bandit_id="B301",
        request="restores a saved {e} from bytes",
        secure="import json\n\ndef restore_{e}(data):\n    return json.loads(data)\n",
        vulnerable="import pickle\n\ndef restore_{e}(data):\n    return pickle.loads(data)\n",
    ),
    VulnerabilityClass(
        name="eval", bandit_id="B307",
        request="parses a {e} value typed by the user",
        secure="import ast\n\ndef parse_{e}(text):\n    return ast.literal_eval(text)\n",
        vulnerable="def parse_{e}(text):\n    return eval(text)\n",
    ),
    VulnerabilityClass(
        name="weak_hash", bandit_id="B324",
        request="hashes the password of a {e}",
        secure="import hashlib\n\ndef hash_{e}_password(password):\n    return hashlib.sha256(password.encode()).hexdigest()\n",
        vulnerable="import hashlib\n\ndef hash_{e}_password(password):\n    return hashlib.md5(password.encode()).hexdigest()\n",
    ),
    VulnerabilityClass(
        name="temp_file", bandit_id="B306",
        request="makes a temporary file for {e} data",
        secure="import tempfile\n\ndef make_{e}_file():\n    handle, path = tempfile.mkstemp()\n    return path\n",
        vulnerable="import tempfile\n\ndef make_{e}_file():\n    path = tempfile.mktemp()\n    return path\n",
    ),
    VulnerabilityClass(
        name="tls", bandit_id="B501",
        request="downloads the {e} page from a URL",
        secure="import requests\n\ndef fetch_{e}(url):\n    return requests.get(url, timeout=10)\n",
        vulnerable="import requests\n\ndef fetch_{e}(url):\n    return requests.get(url, timeout=10, verify=False)\n",
    ),
)

ENTITIES = """user order product invoice account customer ticket report note photo message
comment review payment booking student course book song movie recipe device sensor
employee project task event city team player""".split()

PHRASINGS = (
    "Write a function that {r}.",
    "Please write Python code that {r}.",
    "I need a function that {r}.",
    "Complete the code: a function that {r}.",
    "Show me a function that {r}.",
)

BANDIT_IDS = frozenset(c.bandit_id for c in CLASSES)
