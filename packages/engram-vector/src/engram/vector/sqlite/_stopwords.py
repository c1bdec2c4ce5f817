"""English function words left out of lexical queries (not out of the index).

They match most of a conversation, so they add almost nothing to BM25's ranking while making
FTS5 walk huge posting lists. A query made only of them keeps them all (``"who is it"``).
"""

STOP_WORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its itself
    just me more most my myself no nor not now of off on once only or other our ours ourselves out
    over own same she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours yourself yourselves s t d ll m re ve don
    didn doesn isn wasn weren hasn haven hadn won wouldn shouldn couldn ok okay yeah yes oh um uh
    hey hi hello really also get got go going gonna wanna
    """.split()
)
