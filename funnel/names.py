"""The models the Python reads by name (show, status, the summary, the report, the API), spelled once.

Everything else reads a build through the project's own list of models; these are the ones
whose columns funnel's code knows. Renaming one of them in sql/ means renaming it here.
"""

SALES_FUNNEL = "rep_sales_funnel_monthly"  # the default of show, df() and --compare
STAGE_CONVERSION = "rep_stage_conversion"
STAGE_VELOCITY = "rep_stage_velocity"
LOST_REASONS = "rep_lost_reasons_monthly"
DEAL_COHORTS = "rep_deal_cohorts"
OWNER_FUNNEL = "rep_owner_funnel_monthly"
PIPELINE_FUNNEL = "rep_pipeline_funnel_monthly"  # every pipeline's funnel: show lists them apart
FUNNEL_STEPS = "funnel_steps"  # the seed naming each step
WIN_RATE = "rep_win_rate_monthly"
WON_VALUE = "rep_won_value_monthly"
OPEN_PIPELINE = "rep_open_pipeline_month_end"
SALES_CYCLE = "rep_sales_cycle"

# The models that count one pipeline, the var `pipeline`'s (the others name theirs per row).
ONE_PIPELINE = (SALES_FUNNEL, STAGE_CONVERSION, STAGE_VELOCITY, LOST_REASONS, DEAL_COHORTS, OWNER_FUNNEL)
