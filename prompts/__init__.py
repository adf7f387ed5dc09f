"""Prompt suites: named lists of (category, index, prompt). See prompts/README.md."""

from prompts.suites import PromptEntry, PromptFileError, list_suites, load_prompt_file, load_suite

__all__ = ["PromptEntry", "PromptFileError", "list_suites", "load_prompt_file", "load_suite"]
