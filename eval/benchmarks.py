"""What `mamba-retrieval eval` can run by name, and where its results go by default. Plain data, so `eval --help`
lists them without importing mteb (seconds)."""

DEFAULT_OUTPUT = "eval-results"

# mteb task name -> the LoCoV1 `dataset` value of its rows.
LOCO_SUBTASKS = {
    "LoCoV1SummScreenFD": "summ_screen_fd",
    "LoCoV1GovReport": "gov_report",
    "LoCoV1QMSum": "qmsum",
    "LoCoV1QasperTitle": "qasper_title",
    "LoCoV1QasperAbstract": "qasper_abstract",
    "LoCoV1MultiFieldQA": "multifieldqa",
    "LoCoV1WikimQA": "2wikimqa",
    "LoCoV1PassageRetrieval": "passage_retrieval",
    "LoCoV1CourtListenerHTML": "courtlistener_HTML",
    "LoCoV1CourtListenerPlainText": "courtlistener_Plain_Text",
    "LoCoV1LegalCaseReports": "legal_case_reports",
    "LoCoV1StackOverflow": "stackoverflow",
}

# The 13 public BEIR datasets of the Mamba Retriever paper (its Table 2, as in RepLLaMA), by their mteb names;
# `--benchmark BEIR` adds MS MARCO (dev), the paper's in-domain set.
BEIR_13 = (
    "ArguAna",
    "ClimateFEVER",
    "DBPedia",
    "FEVER",
    "FiQA2018",
    "HotpotQA",
    "NFCorpus",
    "NQ",
    "QuoraRetrieval",
    "SCIDOCS",
    "SciFact",
    "TRECCOVID",
    "Touche2020",
)
BENCHMARKS = {
    "BEIR": BEIR_13 + ("MSMARCO",),
    "LongEmbed": None,  # mteb's own benchmark of that name
    "LoCo": tuple(LOCO_SUBTASKS),
}
