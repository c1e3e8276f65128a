-- Argo CD health check for the stackforge.io kinds: StackForgeTenant,
-- BackupPolicy and DRDrill (one script, registered once per kind in argocd-cm).
-- Source of manifests/argocd/argocd-cm.yaml: edit here, then run
-- `python -m stackforge_operator.manifestgen`. States (docs/install.md):
--   Progressing  no status yet, status.observedGeneration < metadata.generation,
--                Reconciling=True, or Ready missing/Unknown/False without Stalled
--   Degraded     Stalled=True (needs a human), or a tenant with status.isolated
--   Suspended    Ready=True and spec.suspend (tenant: also status.suspended)
--   Healthy      Ready=True otherwise
-- Routine backup and drill runs never flip Reconciling, so an application is
-- not shown Progressing every night. Written for Lua 5.1 (Argo CD's gopher-lua).

local hs = { status = "Progressing", message = "" }

local function find(conditions, wanted)
  if conditions == nil then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if condition.type == wanted then
      return condition
    end
  end
  return nil
end

local function is_true(condition)
  return condition ~= nil and condition.status == "True"
end

-- "Reason: message", or the fallback when the condition says nothing.
local function describe(condition, fallback)
  if condition == nil then
    return fallback
  end
  local reason = condition.reason or ""
  local message = condition.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  if reason ~= "" then
    return reason
  end
  if message ~= "" then
    return message
  end
  return fallback
end

local function suspended(status)
  if obj.spec ~= nil and obj.spec.suspend == true then
    return true
  end
  return obj.kind == "StackForgeTenant" and status.suspended == true
end

local status = obj.status
if status == nil then
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local conditions = status.conditions

local stalled = find(conditions, "Stalled")
if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
  return hs
end

-- The security-incident switch: the tenant serves nobody, on purpose. Shown
-- Degraded (not Suspended) so that an isolated tenant is never mistaken for
-- a working one and Argo CD's on-health-degraded notifications fire.
if obj.kind == "StackForgeTenant" and status.isolated == true then
  hs.status = "Degraded"
  hs.message = "Isolated: spec.isolate cuts all traffic except the operator's"
  return hs
end

local reconciling = find(conditions, "Reconciling")
if is_true(reconciling) then
  hs.message = describe(reconciling, "Reconciling")
  return hs
end

local ready = find(conditions, "Ready")
if ready == nil then
  hs.message = "Waiting for the Ready condition"
  return hs
end
if ready.status == "True" then
  if suspended(status) then
    hs.status = "Suspended"
    if ready.reason == "Suspended" then
      hs.message = describe(ready, "Suspended")
    else
      hs.message = "Suspended (spec.suspend): " .. describe(ready, "Ready")
    end
    return hs
  end
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end

-- Ready=False or Unknown with neither Reconciling nor Stalled: between two
-- status writes; the next one settles it.
hs.message = describe(ready, "Not ready yet")
return hs
