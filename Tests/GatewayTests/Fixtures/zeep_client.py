"""A generated SOAP client nobody here wrote: zeep reads each service's WSDL from the gateway
and calls it. Prints one line per call (`service.Verb result`) for WSDLTests to check."""
import sys

import zeep
import zeep.exceptions

base = sys.argv[1]


def client(path):
    return zeep.Client(base + path + "?wsdl")


counter = client("/counter")
print("counter.Get", counter.service.Get())
print("counter.Update", counter.service.Update(By=5))

kv = client("/kv")
entry = kv.service.Upsert(Key="colour", Value="blue")
print("kv.Upsert", entry.Key, entry.Value)
print("kv.Get", ",".join("%s=%s" % (e.Key, e.Value) for e in kv.service.Get()))
try:
    kv.service.Update(Key="missing", Value="x")
    print("kv.Update no fault")
except zeep.exceptions.Fault as f:
    print("kv.Update fault", f.message)

orders = client("/orders")
receipt = orders.service.Submit(Customer="ada", Line=[{"Item": "bolt", "Quantity": 3}, {"Item": "nut", "Quantity": 4}], Rush=True)
print("orders.Submit", receipt.Number, receipt.Items, receipt.Rush)
print("orders.Get", len(orders.service.Get()))

remote = client("/@gw/counter")
print("remote.Get", remote.service.Get())
