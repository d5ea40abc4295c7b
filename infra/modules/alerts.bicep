// Log search alert rules on the usage tables and on the pipeline's own log lines (AppTraces of the
// workspace-based Application Insights, in the same workspace), and an optional e-mail action group.
// The queries are the files infra/analytics/alerts/*.kql (checked in CI by tools/kql_check against
// tables.json and the documented AppTraces columns); the rules say how often they run, over which
// window, and what value fires.
// Log search alerts: https://learn.microsoft.com/azure/azure-monitor/alerts/alerts-create-log-alert-rule
// https://learn.microsoft.com/azure/templates/microsoft.insights/scheduledqueryrules
// https://learn.microsoft.com/azure/templates/microsoft.insights/actiongroups

param location string
param tags object = {}

@description('Resource id of the Log Analytics workspace the rules query.')
param workspaceId string

@description('Prefix of the rule and action group names.')
param namePrefix string

@description('E-mail address alerts are sent to; empty creates the rules without an action group (alerts show in the portal only).')
param alertEmail string = ''

@minValue(0)
@maxValue(100)
@description('Percent of a deployment\'s calls answered 429 over 15 minutes above which an alert fires.')
param throttledPercentThreshold int

@minValue(0)
@maxValue(100)
@description('Percent of a deployment\'s calls that failed (4xx/5xx other than 429, proxy or stream failures) over 15 minutes above which an alert fires.')
param errorPercentThreshold int

@minValue(1)
@description('Calls a deployment needs in the 15-minute window before its 429 and error rates are judged.')
param minCalls int

@minValue(1)
@description('Tokens one APIM subscription may use in a UTC day before an alert fires.')
param dailyTokensPerSubscriptionThreshold int

@minValue(0)
@description('Gateway events without a usage record (per hour, checked every 30 minutes) above which an alert fires; 0 alerts on the first lost record.')
param missingUsageRecordsThreshold int

var withMinCalls = {
  throttled: replace(loadTextContent('../analytics/alerts/throttled-rate.kql'), '{MinCalls}', string(minCalls))
  errors: replace(loadTextContent('../analytics/alerts/error-rate.kql'), '{MinCalls}', string(minCalls))
}

// Location must be 'global'; the short name is what SMS and e-mail show, 12 characters at most.
// https://learn.microsoft.com/azure/azure-monitor/alerts/action-groups
resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: '${namePrefix}-usage'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'aoai-usage'
    enabled: true
    emailReceivers: [
      {
        name: 'usage-alerts'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var actions = {
  actionGroups: empty(alertEmail) ? [] : [
    actionGroup.id
  ]
}

// Dimensions: each value of the column is its own alert, which fires and resolves on its own. Plain
// objects rather than a loop or map() over column names: checkov's Bicep parser reads no lambdas.
var byDeployment = {
  name: 'Deployment'
  operator: 'Include'
  values: [
    '*'
  ]
}
var bySubscription = {
  name: 'ApimSubscriptionName'
  operator: 'Include'
  values: [
    '*'
  ]
}
var byFunctionApp = {
  name: 'AppRoleName'
  operator: 'Include'
  values: [
    '*'
  ]
}
var bySignal = {
  name: 'Signal'
  operator: 'Include'
  values: [
    '*'
  ]
}

// Each rule: the query runs every evaluationFrequency over the last windowSize; each row is one
// dimension combination (a deployment, a subscription, a Function App and signal) whose metricMeasureColumn is compared with the
// threshold. autoMitigate resolves the alert when the condition clears.
var rules = [
  {
    name: 'throttled-rate'
    displayName: 'Azure OpenAI 429 rate per deployment'
    description: 'More than ${throttledPercentThreshold}% of a deployment\'s calls were answered 429 in 15 minutes (at least ${minCalls} calls). Raise the deployment\'s capacity or spread load; see the usage workbook.'
    severity: 2
    frequency: 'PT5M'
    window: 'PT15M'
    query: withMinCalls.throttled
    measure: 'ThrottledPercent'
    aggregation: 'Maximum'
    dimensions: [
      byDeployment
    ]
    threshold: throttledPercentThreshold
  }
  {
    name: 'error-rate'
    displayName: 'Azure OpenAI error rate per deployment'
    description: 'More than ${errorPercentThreshold}% of a deployment\'s calls failed in 15 minutes (at least ${minCalls} calls; 429s excluded). See the usage workbook, Outcome and status.'
    severity: 2
    frequency: 'PT5M'
    window: 'PT15M'
    query: withMinCalls.errors
    measure: 'ErrorPercent'
    aggregation: 'Maximum'
    dimensions: [
      byDeployment
    ]
    threshold: errorPercentThreshold
  }
  {
    name: 'daily-tokens'
    displayName: 'Daily tokens per APIM subscription'
    description: 'An APIM subscription used more than ${dailyTokensPerSubscriptionThreshold} tokens today (UTC).'
    severity: 3
    frequency: 'PT1H'
    window: 'P1D'
    query: loadTextContent('../analytics/alerts/daily-tokens.kql')
    measure: 'Tokens'
    aggregation: 'Maximum'
    dimensions: [
      bySubscription
    ]
    threshold: dailyTokensPerSubscriptionThreshold
  }
  {
    name: 'missing-usage-records'
    displayName: 'Gateway events without a usage record'
    description: 'More than ${missingUsageRecordsThreshold} calls answered by the Function 30 to 90 minutes ago have no usage record in Log Analytics. Check the landing function\'s logs and docs/usage-analytics.md (re-landing).'
    severity: 1
    frequency: 'PT30M'
    window: 'PT2H'
    query: loadTextContent('../analytics/alerts/missing-usage.kql')
    measure: 'Missing'
    aggregation: 'Total'
    dimensions: []
    threshold: missingUsageRecordsThreshold
  }
  // The pipeline's own failure signals (docs/usage-analytics.md, Pipeline alerts). Any lost or
  // unlanded record is worth a look, so these fire above 0; AppRoleName is the Function App.
  {
    name: 'delivery-lost'
    displayName: 'Usage records lost in delivery'
    description: 'Usage records that neither Event Hubs nor the dead-letter store took: each is logged in full ("usage record undeliverable"). Re-send them from the log lines; see docs/usage-analytics.md (Pipeline alerts) and docs/delivery.md.'
    severity: 1
    frequency: 'PT5M'
    window: 'PT15M'
    query: loadTextContent('../analytics/alerts/delivery-lost.kql')
    measure: 'Lost'
    aggregation: 'Total'
    dimensions: [
      byFunctionApp
    ]
    threshold: 0
  }
  {
    name: 'delivery-at-risk'
    displayName: 'Usage records at risk in delivery'
    description: 'Usage records waiting too long in memory (at_risk), dead-lettered because Event Hubs failed (dead_lettered), or dead letters the replay could not send (replay_failed). See docs/usage-analytics.md (Pipeline alerts).'
    severity: 2
    frequency: 'PT5M'
    window: 'PT15M'
    query: loadTextContent('../analytics/alerts/delivery-at-risk.kql')
    measure: 'Count'
    aggregation: 'Total'
    dimensions: [
      byFunctionApp
      bySignal
    ]
    threshold: 0
  }
  {
    name: 'landing-failed'
    displayName: 'Usage records not landed in Log Analytics'
    description: 'Rows the Logs Ingestion API refused or that still failed after the last retry (rows), or batches whose invocation failed on its last retry (batches). The hub keeps them for its retention: see docs/usage-analytics.md (Pipeline alerts, Re-landing).'
    severity: 1
    frequency: 'PT5M'
    window: 'PT15M'
    query: loadTextContent('../analytics/alerts/landing-failed.kql')
    measure: 'Failed'
    aggregation: 'Total'
    dimensions: [
      byFunctionApp
      bySignal
    ]
    threshold: 0
  }
  {
    name: 'landing-unknown-events'
    displayName: 'Unknown events on the usage hub'
    description: 'Events of an unknown type or schema version, or not JSON, were not landed. See docs/usage-analytics.md (Pipeline alerts).'
    severity: 2
    frequency: 'PT15M'
    window: 'PT30M'
    query: loadTextContent('../analytics/alerts/landing-unknown-events.kql')
    measure: 'Unknown'
    aggregation: 'Total'
    dimensions: [
      byFunctionApp
    ]
    threshold: 0
  }
]

resource rule 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [for r in rules: {
  name: '${namePrefix}-${r.name}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: r.displayName
    description: r.description
    severity: r.severity
    enabled: true
    scopes: [
      workspaceId
    ]
    evaluationFrequency: r.frequency
    windowSize: r.window
    criteria: {
      allOf: [
        {
          query: r.query
          timeAggregation: r.aggregation
          metricMeasureColumn: r.measure
          dimensions: r.dimensions
          operator: 'GreaterThan'
          threshold: r.threshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    // Creating a rule validates its query against the workspace, which fails with "Failed to resolve
    // table" while tables created moments ago in the same deployment are not yet queryable. The queries
    // are validated offline instead, against the same table schemas (tools/kql_check, in CI).
    skipQueryValidation: true
    actions: actions
  }
}]

output ruleNames array = [for (r, i) in rules: rule[i].name]
output actionGroupId string = empty(alertEmail) ? '' : actionGroup.id
