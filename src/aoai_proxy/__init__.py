"""Azure OpenAI pass-through proxy with exact usage records for every call, streams included."""
