"""The Cypher module: every statement is a fixed text that takes values only as $parameters."""

from __future__ import annotations

import re

import pytest
from engram.graph.neo4j import _cypher as q

# Statements are the public str constants and tuples of them, plus the two builders' outputs.
STATEMENTS: dict[str, str] = {}
for _name in q.__all__:
    _value = getattr(q, _name)
    if isinstance(_value, str) and _name not in ("ENTITY", "RELATION", "VECTOR_INDEX"):
        STATEMENTS[_name] = _value
    elif isinstance(_value, tuple):
        STATEMENTS.update({f"{_name}[{i}]": s for i, s in enumerate(_value)})
for _d in range(1, q.MAX_DEPTH + 1):
    STATEMENTS[f"neighbors({_d})"] = q.neighbors(_d)
STATEMENTS["create_vector_index(384)"] = q.create_vector_index(384)

CLAUSES = ("MATCH", "MERGE", "CREATE", "UNWIND", "CALL", "DROP")
PARAM = re.compile(r"\$(\w+)")
QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def _balanced(text: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for ch in QUOTED.sub("", text):
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                return False
    return not stack


def test_there_are_statements() -> None:
    assert len(STATEMENTS) >= 20


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_statement_is_well_formed(name: str) -> None:
    text = STATEMENTS[name]
    assert text.strip() == text and text, f"{name}: empty or padded"
    assert text.split()[0] in CLAUSES, f"{name}: starts with {text.split()[0]!r}"
    assert _balanced(text), f"{name}: unbalanced brackets"
    assert "  " not in text, f"{name}: two spaces in a row (a fragment joined without care)"
    assert not re.search(r"\w(MATCH|WHERE|WITH|RETURN|ORDER|LIMIT|DELETE|SET|CREATE)\b", text), (
        f"{name}: a keyword glued to the previous word (a fragment joined without a space)"
    )


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_no_interpolated_values(name: str) -> None:
    text = STATEMENTS[name]
    assert not re.search(r"\{[A-Za-z_]\w*\}", text), f"{name}: a leftover format placeholder"
    assert "%s" not in text and "%(" not in text, f"{name}: a printf placeholder"
    assert not re.search(r"\b(DIMS|DEPTH)\b", text), f"{name}: a builder placeholder left in"
    literals = set(QUOTED.findall(text))
    assert literals <= {"'cosine'"}, f"{name}: string literals {literals} (values must be $parameters)"
    for param in PARAM.findall(text):
        assert re.fullmatch(r"[a-z_]+", param), f"{name}: odd parameter ${param}"


def test_only_the_builders_write_numbers() -> None:
    for name, text in STATEMENTS.items():
        numbers = re.findall(r"(?<![\w.$])\d+(?![\w])", QUOTED.sub("", text))
        if name.startswith("neighbors("):
            assert numbers == ["1"], numbers  # the upper bound follows "..", checked in test_neighbors_bounds
        elif name.startswith("create_vector_index"):
            assert numbers == ["384"], numbers
        else:
            assert set(numbers) <= {"0", "1"}, f"{name}: numbers {numbers} (values must be $parameters)"


def test_scope_is_applied_in_every_scoped_read() -> None:
    for name in (
        "ENTITIES",
        "SIMILAR_INDEXED",
        "SIMILAR_EXACT",
        "RELATIONS",
        "DELETE_SCOPE_ENTITIES",
        "DELETE_SCOPE_RELATIONS",
    ):
        text = STATEMENTS[name]
        for field in ("user_id", "agent_id", "run_id"):
            assert f"${field} IS NULL OR" in text, f"{name} ignores {field}"
    walk = q.neighbors(3)
    assert walk.count("$user_id IS NULL") == 2, "the walk checks the scope of seeds and of every relation"


def test_vector_index_ddl() -> None:
    ddl = q.create_vector_index(384)
    assert ddl.startswith("CREATE VECTOR INDEX engram_entity_embedding IF NOT EXISTS FOR (e:EngramEntity)")
    assert "`vector.dimensions`: 384," in ddl and "`vector.similarity_function`: 'cosine'" in ddl
    assert "`vector.dimensions`: 1," in q.create_vector_index(1)
    assert "`vector.dimensions`: 4096," in q.create_vector_index(q.MAX_VECTOR_DIMS)


@pytest.mark.parametrize(
    "dims",
    [True, False, 384.0, "384", "384}}) DETACH DELETE e //", None, 0, -1, q.MAX_VECTOR_DIMS + 1, [384]],
)
def test_vector_index_ddl_refuses_anything_but_an_int_in_range(dims: object) -> None:
    with pytest.raises(ValueError, match="vector index dimensions"):
        q.create_vector_index(dims)  # type: ignore[arg-type]


def test_neighbors_bounds() -> None:
    for d in range(1, q.MAX_DEPTH + 1):
        assert f"[:ENGRAM_RELATION*1..{d}]-()" in q.neighbors(d)
    assert q.neighbors(10) == q.neighbors(q.MAX_DEPTH), "deeper walks are capped"
    for bad in (0, -1, True, 2.0, "2", None):
        with pytest.raises(ValueError, match="depth"):
            q.neighbors(bad)  # type: ignore[arg-type]


def test_schema_statements() -> None:
    text = " ".join(q.CREATE_CONSTRAINTS)
    assert "REQUIRE e.id IS UNIQUE" in text and "REQUIRE e.scope_key IS UNIQUE" in text
    assert "REQUIRE r.id IS UNIQUE" in text
    assert all("IF NOT EXISTS" in s for s in q.CREATE_CONSTRAINTS)
    assert q.DROP_VECTOR_INDEX.endswith("IF EXISTS")
    assert "db.index.vector.queryNodes($index, $k, $embedding)" in q.SIMILAR_INDEXED
