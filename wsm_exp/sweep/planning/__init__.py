"""Planning from config alone: compose every job, plan each (JobPlan), and where its series come from."""
