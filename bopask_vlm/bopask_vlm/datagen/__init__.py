"""Offline dataset generation: BOP scenes to BOP-ASK question/answer records."""
