"""An OpenAI-compatible embeddings server (`mamba-retrieval serve`): the served model and its names
(served_model.py), the batcher that encodes many clients' requests together (batcher.py), the API's wire format
(openai_api.py) and the FastAPI app on uvicorn (app.py)."""
