// What operators look at: an Azure Monitor workbook over the gateway's Application Insights (tokens and cost per
// caller and deployment, throttles and quota refusals, latency percentiles, errors and backend health) and three
// log search alert rules (5xx rate, quota refusals, ledger write failures). The queries read the metric and span
// names of shared/telemetry (docs/observability.md): change them together.

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object = {}

@description('Name suffix shared by the resources of this deployment.')
param resourceToken string

@description('Resource ID of the Application Insights component (computed in main.bicep from its name).')
param appInsightsId string

@description('E-mail address the alerts notify; empty: the alerts fire in the portal only.')
param alertEmail string = ''

@description('Alert when more than this percentage of model calls in 5 minutes answer 5xx.')
@minValue(1)
@maxValue(100)
param serverErrorPercentThreshold int = 5

@description('Alert when more than this many calls are refused by a quota in 5 minutes.')
@minValue(1)
param quotaRefusalThreshold int = 100

var workbookName = guid(resourceGroup().id, 'gateway-workbook', resourceToken)

// Dimension access, shared by the queries below.
var dims = 'extend caller = tostring(customDimensions["gateway.caller_id"]), deployment = tostring(customDimensions["gateway.deployment"])'

var tokensPerMinute = 'customMetrics | where name == "gateway.tokens" | ${dims} | summarize tokens = sum(valueSum) by bin(timestamp, 1m), caller | render timechart'
var tokensAndCost = 'let tokens = customMetrics | where name == "gateway.tokens" | ${dims}, kind = tostring(customDimensions["gen_ai.token.type"]) | summarize input = sumif(valueSum, kind == "input"), output = sumif(valueSum, kind == "output"), cached = sumif(valueSum, kind == "cached"), reasoning = sumif(valueSum, kind == "reasoning") by caller, deployment; let cost = customMetrics | where name == "gateway.cost" | ${dims} | summarize cost_usd = sum(valueSum) by caller, deployment; tokens | join kind=leftouter cost on caller, deployment | project caller, deployment, input, output, cached, reasoning, cost_usd = round(coalesce(cost_usd, 0.0), 4) | order by cost_usd desc'
var throttles = 'customMetrics | where name in ("gateway.requests", "gateway.quota.refusals") | extend status = toint(customDimensions["http.response.status_code"]), outcome = tostring(customDimensions["gateway.outcome"]), limit = tostring(customDimensions["gateway.quota.limit"]) | extend kind = case(name == "gateway.quota.refusals", strcat("quota: ", limit), status == 429 and outcome == "upstream_error", "upstream 429", "") | where kind != "" | summarize calls = sum(valueSum) by bin(timestamp, 1m), kind | render timechart'
var latency = 'dependencies | where isnotempty(customDimensions["gateway.request_id"]) | extend deployment = tostring(customDimensions["gateway.deployment"]) | summarize p50 = percentile(duration, 50), p95 = percentile(duration, 95), p99 = percentile(duration, 99) by bin(timestamp, 5m), deployment | render timechart'
var overhead = 'customMetrics | where name in ("gateway.overhead", "gateway.upstream.duration", "gateway.time_to_first_token") | summarize mean_ms = sum(valueSum) / sum(valueCount), max_ms = max(valueMax) by bin(timestamp, 5m), name | render timechart'
var errors = 'customMetrics | where name == "gateway.requests" | extend status = toint(customDimensions["http.response.status_code"]), outcome = tostring(customDimensions["gateway.outcome"]) | where status >= 400 | summarize calls = sum(valueSum) by bin(timestamp, 5m), result = strcat(status, " ", outcome) | render timechart'
var backends = 'customMetrics | where name in ("gateway.backend.events", "gateway.ledger.write_failures") | extend backend = tostring(customDimensions["gateway.backend"]), event = tostring(customDimensions["gateway.backend.event"]) | summarize count = sum(valueSum) by bin(timestamp, 5m), what = iff(name == "gateway.ledger.write_failures", "ledger write failures", strcat(backend, " ", event)) | render timechart'

var queries = [
  {
    title: 'Tokens per caller per minute'
    query: tokensPerMinute
    size: 0
  }
  {
    title: 'Tokens and cost by caller and deployment'
    query: tokensAndCost
    size: 1
  }
  {
    title: 'Throttles: upstream 429s and quota refusals by limit'
    query: throttles
    size: 0
  }
  {
    title: 'Latency percentiles by deployment (sampled spans, ms)'
    query: latency
    size: 0
  }
  {
    title: 'Gateway overhead, upstream latency, time to first token (ms)'
    query: overhead
    size: 0
  }
  {
    title: 'Errors by status and outcome'
    query: errors
    size: 0
  }
  {
    title: 'Backend health and ledger write failures'
    query: backends
    size: 0
  }
]

var workbook = {
  version: 'Notebook/1.0'
  items: [for (item, i) in queries: {
    type: 3
    name: 'query-${i}'
    content: {
      version: 'KqlItem/1.0'
      title: item.title
      query: item.query
      size: item.size
      timeContext: {
        durationMs: 86400000
      }
      queryType: 0
      resourceType: 'microsoft.insights/components'
    }
  }]
  isLocked: false
  fallbackResourceIds: [
    appInsightsId
  ]
}

resource gatewayWorkbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: workbookName
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'AI gateway (${resourceToken})'
    category: 'workbook'
    sourceId: appInsightsId
    serializedData: string(workbook)
  }
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-gateway-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'aigateway'
    enabled: true
    emailReceivers: [
      {
        name: 'operators'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var actions = empty(alertEmail) ? {} : {
  actionGroups: [
    actionGroup!.id
  ]
}

var alerts = [
  {
    name: 'alert-gateway-5xx-${resourceToken}'
    description: 'More than ${serverErrorPercentThreshold}% of model calls answered 5xx in 5 minutes.'
    severity: 1
    query: 'customMetrics | where name == "gateway.requests" | extend status = toint(customDimensions["http.response.status_code"]) | summarize total = sum(valueSum), failed = sumif(valueSum, status >= 500) | where total > 0 | extend percent = 100.0 * failed / total'
    measure: 'percent'
    threshold: serverErrorPercentThreshold
  }
  {
    name: 'alert-gateway-quota-refusals-${resourceToken}'
    description: 'More than ${quotaRefusalThreshold} calls refused by a quota in 5 minutes.'
    severity: 3
    query: 'customMetrics | where name == "gateway.quota.refusals" | summarize refusals = sum(valueSum)'
    measure: 'refusals'
    threshold: quotaRefusalThreshold
  }
  {
    name: 'alert-gateway-ledger-failures-${resourceToken}'
    description: 'The usage ledger could not write rows: usage is missing from finance reports until replayed from the error log.'
    severity: 1
    query: 'customMetrics | where name == "gateway.ledger.write_failures" | summarize rows = sum(valueSum)'
    measure: 'rows'
    threshold: 0
  }
  {
    // Emitted once per caller, monthly limit, threshold and month (shared/finance/alerts.py); the traces with
    // message "budget threshold crossed" name the caller (docs/finance.md, "Budget alerts").
    name: 'alert-gateway-budget-threshold-${resourceToken}'
    description: 'A caller crossed a budget threshold (80 % or 100 % of its monthly tokens or cost by default).'
    severity: 3
    query: 'customMetrics | where name == "gateway.budget.thresholds_crossed" | summarize crossings = sum(valueSum)'
    measure: 'crossings'
    threshold: 0
  }
]

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [for alert in alerts: {
  name: alert.name
  location: location
  tags: tags
  properties: {
    displayName: alert.name
    description: alert.description
    severity: alert.severity
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: alert.query
          timeAggregation: 'Maximum'
          metricMeasureColumn: alert.measure
          operator: 'GreaterThan'
          threshold: alert.threshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: actions
  }
}]

output workbookId string = gatewayWorkbook.id
