"""derain: remove rain streaks from photographs, trained by task transfer learning."""
__version__ = "0.1.0"
