from django.urls import path

from agentops.webhooks import views

app_name = "webhooks"
urlpatterns = [
    path("", views.index, name="index"),
    path("endpoints/<int:endpoint_id>/enable", views.endpoint_enable, name="endpoint_enable"),
    path("endpoints/<int:endpoint_id>/delete", views.endpoint_delete, name="endpoint_delete"),
    path("deliveries/<int:delivery_id>/send", views.delivery_resend, name="delivery_resend"),
]
