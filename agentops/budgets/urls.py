from django.urls import path

from agentops.budgets import views

app_name = "budgets"

urlpatterns = [
    path("", views.index, name="index"),
    path("<int:budget_id>/enable", views.enable, name="enable"),
    path("<int:budget_id>/delete", views.delete, name="delete"),
]
