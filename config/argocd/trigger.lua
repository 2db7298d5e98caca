-- Argo CD health of a chainwatch Trigger (key resource.customizations.health.chainwatch.io_Trigger).
-- Progressing: not admitted for this generation yet. Degraded: not admitted, or its deliveries
-- fail (the workers' Delivering condition). Healthy: admitted and delivering (or not yet used).
local hs = {status = "Progressing", message = "waiting for the operator"}
if obj.status == nil or obj.status.conditions == nil then return hs end
local generation = obj.metadata.generation or 0
local ready, delivering = nil, nil
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then ready = c end
  if c.type == "Delivering" then delivering = c end
end
if ready == nil then return hs end
if (ready.observedGeneration or obj.status.observedGeneration or 0) < generation then
  hs.message = "the operator has not seen generation " .. generation .. " yet"
elseif ready.status ~= "True" then
  hs.status = "Degraded"; hs.message = (ready.reason or "") .. ": " .. (ready.message or "")
elseif delivering ~= nil and delivering.status == "False" then
  hs.status = "Degraded"; hs.message = (delivering.reason or "") .. ": " .. (delivering.message or "")
else
  hs.status = "Healthy"; hs.message = ready.message
end
return hs
