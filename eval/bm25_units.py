"""BM25 over the sentence units of one document (bm25s, English stop words): the lexical baseline of sentence
selection, in `answer` and the QMSum sentence-recall study."""


class BM25Units:
    name = "BM25 (bm25s)"

    def __init__(self, units):
        import bm25s  # the `eval` extra: needed only when this baseline runs

        self.retriever = bm25s.BM25()
        self.retriever.index(bm25s.tokenize(units, stopwords="en", show_progress=False), show_progress=False)
        self.tokenize = lambda text: bm25s.tokenize([text], stopwords="en", return_ids=False, show_progress=False)[0]

    def score(self, query):
        return self.retriever.get_scores(self.tokenize(query)).tolist()
