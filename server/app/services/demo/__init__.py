"""`metricis demo`: a study to click through in development, built through the real services.

- `seed`: `seed_demo` creates what is missing (staff, the study, its consent form, battery and
  visit schedule, a participant who has consented and completed their baseline visit) and issues
  a fresh access code to the participant who can start now; `DemoSummary` is what
  `metricis demo` prints.
- `content`: what the demo holds: the consent form's text and questions, the battery's tasks, the
  schedule's events and reminder rules, and the synthetic trials and signature the completed
  participant submitted.
"""
