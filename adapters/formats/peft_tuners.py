"""Other PEFT tuners."""
MORE_TUNERS: dict = {}
