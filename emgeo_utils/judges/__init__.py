"""The EM rule and the judges that apply it to text: an OpenAI-compatible LLM judge and an offline text judge (notebook 05)."""
