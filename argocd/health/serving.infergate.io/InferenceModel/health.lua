-- Argo CD health check for InferenceModel (inferencemodels.serving.infergate.io).
-- Reads what the operator writes: status.observedGeneration, status.phase, status.message and the
-- conditions Available / Progressing / Degraded. The order of the checks below is the contract:
--   1. status missing or older than metadata.generation            -> Progressing (not observed yet)
--   2. phase Failed or Degraded, or condition Degraded=True        -> Degraded
--   3. phase Paused (canary waiting) or ScaledToZero, or Available=False ScaledToZero -> Suspended
--   4. phase Ready and Available not False                         -> Healthy
--   5. anything else (Pending, Progressing, unknown phases)        -> Progressing
local hs = {}

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function says(status, fallback)
  if status.message ~= nil and status.message ~= "" then
    return status.message
  end
  return fallback
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the infergate operator to report status"
  return hs
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
if status.observedGeneration == nil or (generation ~= nil and status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the infergate operator to observe generation " .. tostring(generation)
  return hs
end

local phase = status.phase
local degraded = condition(status, "Degraded")
local available = condition(status, "Available")

if phase == "Failed" or phase == "Degraded" or (degraded ~= nil and degraded.status == "True") then
  hs.status = "Degraded"
  local fallback = "InferenceModel is " .. tostring(phase)
  if degraded ~= nil and degraded.status == "True" then
    fallback = tostring(degraded.reason) .. ": " .. tostring(degraded.message)
  end
  hs.message = says(status, fallback)
  return hs
end

if phase == "Paused" or phase == "ScaledToZero"
    or (available ~= nil and available.status == "False" and available.reason == "ScaledToZero") then
  hs.status = "Suspended"
  hs.message = says(status, "InferenceModel is paused")
  return hs
end

if phase == "Ready" and (available == nil or available.status ~= "False") then
  hs.status = "Healthy"
  hs.message = says(status, "InferenceModel is ready")
  return hs
end

hs.status = "Progressing"
hs.message = says(status, "InferenceModel is " .. tostring(phase or "Pending"))
return hs
